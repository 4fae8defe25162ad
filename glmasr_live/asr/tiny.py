"""Small GLM-ASR models built from config: the demo checkpoint's recipe and the test models.

They use the real classes (``GlmAsrForConditionalGeneration``, ``GlmAsrProcessor``) with a
character tokenizer (the demo model's) or a byte-level BPE one (``build_bpe_tokenizer``: the
kind the real model has, where a rare CJK character is split across byte tokens and a word
carries its leading space), whose special tokens and chat template reproduce the real prompt:

    <|user|>\\n<|begin_of_audio|><|pad|>×N<|end_of_audio|><|user|>\\n{instruction}<|assistant|>\\n
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GlmAsrConfig,
    GlmAsrForConditionalGeneration,
    GlmAsrProcessor,
    PreTrainedTokenizerFast,
    WhisperFeatureExtractor,
)

SPECIAL_TOKENS = [
    "<|endoftext|>",  # eos
    "<|user|>",
    "<|assistant|>",
    "<|begin_of_audio|>",
    "<|end_of_audio|>",
    "<|pad|>",  # the audio placeholder, as in the real model
    "<|unk|>",
    "<|padding|>",  # text padding; must differ from eos
]

# Same shape as the real model's template: the audio comes before the instruction.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ '<|user|>\\n' }}"
    "{%- for c in message['content'] -%}"
    "{%- if c['type'] == 'audio' -%}{{ '<|begin_of_audio|><|pad|><|end_of_audio|><|user|>\\n' }}"
    "{%- elif c['type'] == 'text' -%}{{ c['text'] }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\\n' }}"
    "{%- for c in message['content'] -%}{{ c['text'] }}{%- endfor -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)

DEFAULT_INSTRUCTION = "Please transcribe this audio into text"

# Printable ASCII covers the instruction and English transcripts; the extra characters are the
# Mandarin digits and a little CJK punctuation.
BASE_CHARS = [chr(c) for c in range(32, 127)] + ["\n"]
CJK_CHARS = list("零一二三四五六七八九十百千万两，。？！")


def build_char_tokenizer(extra_chars: Iterable[str] = CJK_CHARS) -> PreTrainedTokenizerFast:
    """A character tokenizer with the real model's special tokens (ids 0..7)."""
    chars: list[str] = []
    for ch in [*BASE_CHARS, *extra_chars]:
        if ch not in chars:
            chars.append(ch)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|unk|>", fuse_unk=True))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",
        pad_token="<|padding|>",
        unk_token="<|unk|>",
        additional_special_tokens=SPECIAL_TOKENS[1:6],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


# Training text for the BPE tokenizer: English, Mandarin (simplified) and Cantonese (traditional,
# with its own characters), plus the instruction, so common words and characters get merges.
BPE_CORPUS = (
    "Please transcribe this audio into text. hello please start stop open close left right up down "
    "yes no blue red green next back one two three four five six seven eight nine zero ten "
    "the quick brown fox jumps over the lazy dog. We will ship on Friday, and then we meet again. "
    "你好，世界。今天天气很好，我们一起去公园吧。零一二三四五六七八九十百千万。请把音频转写成文字。"
    "我哋今日去饮茶，你食咗饭未呀？佢话听日唔得闲。呢度好靓，係咪？冇问题，唔该晒。"
    # A spread of Han characters, so that many get merged into one token (as in the real
    # vocabulary) while rarer ones (U+9F98 龘) stay split across byte tokens.
    + "".join(chr(0x4E00 + 23 * i) for i in range(400))
)


def build_bpe_tokenizer(vocab_size: int = 1200) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style byte alphabet, as the real model's), trained on
    ``BPE_CORPUS``, with the real special tokens (ids 0..7) and chat template. Its vocabulary
    is over 1,000, so the engine caps generation at the real model's 12 tokens per second."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([BPE_CORPUS] * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",
        pad_token="<|padding|>",
        unk_token="<|unk|>",
        additional_special_tokens=SPECIAL_TOKENS[1:6],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def window_token_samples(chunk_length: int, hop_length: int, sampling_rate: int = 16000) -> int:
    """The samples of one audio token, 8 mel frames of ``hop_length`` (the encoder merges 4 frames
    after a stride-2 convolution); ``ValueError`` unless a ``chunk_length``-second window holds a
    whole number of them (the real model's hop of 160 samples: an even number of seconds)."""
    if hop_length < 1 or chunk_length < 1:
        raise ValueError(
            f"the window must be at least 1 s and the hop at least 1 sample, not {chunk_length} s and {hop_length}"
        )
    unit = 8 * hop_length
    if (chunk_length * sampling_rate) % unit:
        raise ValueError(
            f"a {chunk_length} s window is not a whole number of audio tokens of 8 x {hop_length} samples"
        )
    return unit


def build_processor(
    tokenizer: PreTrainedTokenizerFast | None = None, chunk_length: int = 30, hop_length: int = 160
) -> GlmAsrProcessor:
    """A ``GlmAsrProcessor`` with a 128-bin Whisper front end and ``chunk_length``-second windows.

    A full window must hold a whole number of audio tokens (``window_token_samples``); the real
    model's hop is 160 samples (10 ms).
    """
    window_token_samples(chunk_length, hop_length)
    fe = WhisperFeatureExtractor(
        feature_size=128,
        sampling_rate=16000,
        hop_length=hop_length,
        chunk_length=chunk_length,
        n_fft=400,
        return_attention_mask=True,
    )
    tok = tokenizer or build_char_tokenizer()
    return GlmAsrProcessor(
        feature_extractor=fe,
        tokenizer=tok,
        chat_template=CHAT_TEMPLATE,
        default_transcription_prompt=DEFAULT_INSTRUCTION,
    )


def build_config(
    tokenizer: PreTrainedTokenizerFast,
    *,
    audio_hidden: int = 128,
    audio_layers: int = 2,
    audio_heads: int = 4,
    text_hidden: int = 64,
    text_layers: int = 2,
    text_heads: int = 4,
    text_kv_heads: int = 2,
    text_intermediate: int | None = None,
) -> GlmAsrConfig:
    """A small ``GlmAsrConfig`` (the real architecture at reduced width and depth)."""
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return GlmAsrConfig(
        audio_config={
            "model_type": "glmasr_encoder",
            "hidden_size": audio_hidden,
            # The projector reshapes 4 frames x hidden into intermediate_size: must be 4 x hidden.
            "intermediate_size": 4 * audio_hidden,
            "num_hidden_layers": audio_layers,
            "num_attention_heads": audio_heads,
            "num_mel_bins": 128,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": text_hidden,
            "intermediate_size": text_intermediate or 3 * text_hidden,
            "num_hidden_layers": text_layers,
            "num_attention_heads": text_heads,
            "num_key_value_heads": text_kv_heads,
            "max_position_embeddings": 4096,
            "eos_token_id": [eos],
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None,
        },
        audio_token_id=int(tokenizer.convert_tokens_to_ids("<|pad|>")),  # type: ignore[arg-type]
    )


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast, seed: int = 0, spread: float | None = None, **sizes: int
) -> GlmAsrForConditionalGeneration:
    """A randomly initialised small model (deterministic for a seed).

    With the default initialisation a random model emits one token forever, which makes every
    equality test pass trivially; ``spread`` (e.g. 1.0) re-draws the matrices with a larger
    scale so that the output is varied and depends on the audio.
    """
    import math

    import torch

    torch.manual_seed(seed)
    model = GlmAsrForConditionalGeneration(build_config(tokenizer, **sizes))
    if spread:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() >= 2:
                    std = spread if "embed" in name else spread * 8 / math.sqrt(p.shape[-1])
                    p.normal_(0.0, std)
    model.generation_config.eos_token_id = model.config.text_config.eos_token_id  # type: ignore[union-attr]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model

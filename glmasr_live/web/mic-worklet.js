// AudioWorklet of the /mic page (glmasr-live serve): collects the microphone's samples (mono:
// channels averaged) into blocks of `blockFrames` and posts each to the page as a Float32Array
// with its peak. The message "stop" flushes the block being filled, posts {done: true} and ends.
"use strict";

class MicBlocks extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.blockFrames = Math.max(128, (opts.blockFrames | 0) || Math.round(sampleRate / 10));
    this.block = new Float32Array(this.blockFrames);
    this.filled = 0;
    this.peak = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data !== "stop" || !this.running) return;
      this.running = false;
      if (this.filled > 0) this.post(this.block.slice(0, this.filled));
      this.port.postMessage({ done: true });
    };
  }

  process(inputs) {
    if (!this.running) return false;
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    const k = channels.length;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += channels[c][i];
      s /= k;
      const a = s < 0 ? -s : s;
      if (a > this.peak) this.peak = a;
      this.block[this.filled++] = s;
      if (this.filled === this.blockFrames) {
        this.post(this.block);
        this.block = new Float32Array(this.blockFrames);
        this.filled = 0;
      }
    }
    return true;
  }

  post(pcm) {
    this.port.postMessage({ pcm, peak: this.peak }, [pcm.buffer]);
    this.peak = 0;
  }
}

registerProcessor("mic-blocks", MicBlocks);

"""``glmasr-live serve``: one model, many streams over the network, rooms, pages, standard APIs.

Layout (imports go downward): ``app`` (the aiohttp application and its lifecycle) uses the
endpoint modules ``ingest``, ``realtime``, ``transcriptions`` and ``pages``; those use ``rooms``
(fan-out, journals), ``access`` (tokens, Host/Origin) and ``pcm`` (frames → samples, pacing),
which use nothing of the server. The model is reached only through ``glmasr_live.streams``.
"""

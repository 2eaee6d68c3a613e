"""A local stand-in for the parts of Microsoft Graph and Azure that the app talks to.

The app reaches it only through ``GRAPH_BASE_URL`` and ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``, exactly as
it reaches the real services, so the real SDKs run unchanged against it.  See ``emulator/README.md``.
"""

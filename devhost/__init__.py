"""A local stand-in for the Azure Functions host.

Core Tools cannot be installed on the dev/CI machines, so ``python -m devhost`` runs ``function_app.py``
the way the real host does (indexing, HTTP routing, queue and timer triggers) against Azurite.  It is a
development and test tool only; in Azure the real host runs the same ``function_app.py`` untouched.
"""

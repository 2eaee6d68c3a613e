"""``provisioning``: the operators' and scripts' command line for the provisioning API.

It talks to the app over HTTP only (the routes of ``../shared/DESIGN.md``'s contract, as a Logic App or a
script would): it imports nothing from ``shared/`` beyond its pure ``core`` (id formats, status vocabulary).
"""

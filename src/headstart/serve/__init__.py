"""``headstart serve``: trained runs behind an HTTP API and a web page (the ``serve`` extra).

:func:`create_app` gives the ASGI app (Starlette); the command runs it on uvicorn.
"""

from headstart.serve.app import ServeSettings, create_app, model_names
from headstart.serve.uploads import Limits

__all__ = ["Limits", "ServeSettings", "create_app", "model_names"]

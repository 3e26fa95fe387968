"""The search server: a FastAPI app (``cbir.server.app.create_app``) and its static web page.

Nothing is imported here, so the command line works without the server's
optional dependencies installed.
"""

"""FastAPI dependencies: the loaded state, handed to routes (never a module global)."""

from fastapi import HTTPException, Request


def get_state(request: Request):
    state = getattr(request.app.state, "service", None)
    if state is None:
        raise HTTPException(503, "the service is still loading the model and the indexes")
    return state


def get_batchers(request: Request):
    """{"text", "image": MicroBatcher} of this app (started by its lifespan)."""
    return request.app.state.batchers

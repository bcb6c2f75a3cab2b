"""The studio's login, served by a real Gradio app: throttled, and keyed on the client's address."""
from __future__ import annotations

import gradio as gr
import httpx
from starlette.middleware import Middleware

from app.main import ClientAddressMiddleware, password_table_check, throttled_auth
from engine.rating.accounts import LoginThrottle

PASSWORD = "correct horse battery"


def test_real_login_route_is_throttled_and_sees_the_address() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0], free_failures=1)
    with gr.Blocks() as blocks:
        gr.Markdown("hello")
    _, url, _ = blocks.launch(auth=throttled_auth(password_table_check([("ann", PASSWORD)]), throttle=throttle),
                              app_kwargs={"middleware": [Middleware(ClientAddressMiddleware)]},
                              prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        def login(password: str) -> int:
            return httpx.post(f"{url.rstrip('/')}/login", data={"username": "ann", "password": password}).status_code

        assert [login("wrong one"), login("wrong two")] == [400, 400]
        assert login(PASSWORD) == 400  # locked out for a second: refused without a check
        assert ("address", "127.0.0.1") in throttle._records  # the middleware handed the address over
        now[0] += throttle.retry_after("ann", "127.0.0.1")
        assert login(PASSWORD) == 200
    finally:
        blocks.close()

"""The simulator's Flask factory: WeChat's API, the learner's phone, and a control API for tests."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from web.routing import App

from . import api, complaints, control, phone
from .config import SandboxConfig
from .signing import PlatformIdentity
from .state import SandboxState


def create_sandbox_app(config: SandboxConfig) -> Flask:
    """Build a simulator app; it works standalone at "/" and mounted under a prefix."""
    app = App(__name__, template_folder=str(Path(__file__).with_name("templates")))
    identity = PlatformIdentity(config)
    app.extensions["wechatpay_sandbox"] = SandboxState(config, identity)
    api.install(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(phone.bp)
    app.register_blueprint(control.bp, url_prefix="/control")
    complaints.install(app)
    return app

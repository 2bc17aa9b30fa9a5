"""Run the WeChat Pay sandbox (and Alipay's under /alipay) on its own port over TLS: ``python sandbox_server.py cfg.json``."""

from __future__ import annotations

import json
import logging
import signal
import ssl
import sys
import threading
from pathlib import Path

from werkzeug.serving import make_server

from wechatpay.sandbox import SandboxConfig, create_sandbox_app


def main(config_file: str) -> None:
    spec = json.loads(Path(config_file).read_text())
    config = SandboxConfig(
        mchid=spec["mchid"], appid=spec["appid"],
        merchant_public_key_pem=Path(spec["merchant_public_key_file"]).read_bytes(),
        merchant_serial=spec["merchant_serial"], apiv3_key=spec["apiv3_key"].encode(),
        platform_private_key_pem=Path(spec["platform_key_file"]).read_bytes(),
        public_key_id=spec["public_key_id"], notify_origin_map=spec["notify_origin_map"],
        retry_scale=spec["retry_scale"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(spec["tls_cert_file"], spec["tls_key_file"])
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_sandbox_app(config)
    served: object = app
    alipay = None
    if "alipay" in spec:  # Alipay's simulator beside WeChat's, under /alipay
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        from alipay.sandbox import AlipaySandboxConfig, create_alipay_sandbox

        given = spec["alipay"]
        alipay = create_alipay_sandbox(AlipaySandboxConfig(
            app_id=given["app_id"], seller_id=given["seller_id"],
            app_public_key_pem=Path(given["app_public_key_file"]).read_bytes(),
            alipay_private_key_pem=Path(given["alipay_private_key_file"]).read_bytes(),
            notify_origin_map=spec["notify_origin_map"], retry_scale=spec["retry_scale"]))
        served = DispatcherMiddleware(app, {"/alipay": alipay})
    server = make_server("127.0.0.1", spec["port"], served, threaded=True, ssl_context=context)  # type: ignore[arg-type]
    server.daemon_threads = True  # type: ignore[attr-defined]
    # SIGTERM stops serving; the request threads are daemons and die with the process.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server.serve_forever(poll_interval=0.05)
    app.extensions["wechatpay_sandbox"].stop()
    if alipay is not None:
        alipay.extensions["alipay_sandbox"].stop()


if __name__ == "__main__":
    main(sys.argv[1])

"""The Alipay OpenAPI protocol: RSA2 signing, verified answers, notifications, a typed client.

Like ``wechatpay/`` it knows nothing of Flask, Peewee or the shop: it takes
keys, parameters and a clock, and returns values or raises one typed error.
"""

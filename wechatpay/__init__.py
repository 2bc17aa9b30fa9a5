"""WeChat Pay APIv3 protocol: signing, verification, AEAD and a typed client.

This package knows nothing of Flask, Peewee or licensing; it takes bytes, keys
and a clock and returns values or raises one typed error.
"""

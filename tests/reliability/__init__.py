"""The reliability suite: real buyers against a real gunicorn server and the WeChat Pay sandbox under faults."""

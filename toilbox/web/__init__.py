"""The status page the daemon serves: views (plain data), templates, the HTTP listener."""

"""Handlers named by the cluster files of test_cli.py."""


def shout(payload, ctx):
    return payload.upper() + b"!"


class Images:
    """A class handler: each method serves the request type named after it."""

    def __init__(self):
        self.served = 0

    def images_resize(self, req, ctx):
        self.served += 1
        return {"width": req["width"] // 2, "served": self.served}

    def images_rotate(self, req, ctx):
        return {"angle": (req["angle"] + 90) % 360}

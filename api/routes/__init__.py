"""One router per resource; ``kernos.api.app`` includes them."""

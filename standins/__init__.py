"""Local stand-ins for outside services (the X API, mail and webhook receivers) for the demo and the tests."""

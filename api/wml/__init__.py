"""IBM Watson Machine Learning v3 over kscore: the routes IBM's Python client
(``watson-machine-learning-client`` 1.0.x) calls, with the documents, statuses and error
bodies it needs back (``../shared/wml-v3-client-protocol.md``).

A thin adapter: storing, deploying and scoring are ``api.services`` and the stores, as for
/api/v1; what WML clients send that a model record does not hold is ``shared.wml_store``.
"""

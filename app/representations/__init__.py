"""Representations other than JSON: the XML mapping, CSV streams and HTML pages.

``app.negotiation`` picks one of them; these modules only turn plain data into bytes
(and XML bytes back into plain data).
"""

"""The delivery log: the receiver's buffered writer, the readers behind ``events
list|show|stats|tail``, and replay.
"""

"""The in-memory chat app behind ``eventbus demo``.

Written the way a user writes an eventbus app (see the README quickstart): events in
:mod:`.events`, listener classes in :mod:`.listeners`, the provider dict in :mod:`.provider`,
and :mod:`.app` playing the web app — requests that create chats and send messages, each
with its user and locale in :mod:`eventbus.context`.
"""

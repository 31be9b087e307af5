"""Conversations: slices and shapes as TRL-format vision chats, prompts and answer parsers."""

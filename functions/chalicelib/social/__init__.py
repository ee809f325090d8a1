"""People and their graph: profiles, follows, blocks and mutes, avatars, search."""

"""Who is calling: the caller's bearer token, and the site origin's signature."""

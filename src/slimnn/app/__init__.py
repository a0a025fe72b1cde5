"""App layer: the command line (:mod:`.cli`), the MiniLM demo (:mod:`.demo`) and its tasks (:mod:`.tasks`)."""

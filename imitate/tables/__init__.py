"""The ``tables`` stage: evaluation rows gathered into the paper's result tables, beside the paper's own numbers."""

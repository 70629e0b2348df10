"""`gmdrit report`: run folders read back, the HTML page and its charts."""

"""`gmdrit eval`: the offline protocol, its metric registry, the temperature sweep."""

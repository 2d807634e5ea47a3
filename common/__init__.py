"""Small helpers every layer may use. Nothing here imports the project's other packages, so the
one-way flow video → ... → reports is kept whichever stage calls them."""

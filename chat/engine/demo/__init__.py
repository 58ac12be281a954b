"""The offline demo model: Converse-shaped answers without AWS (``model``), chosen by plain rules
(``decide``) over what it reads from the messages (``reading``)."""

"""Files written whole or not at all, and CSV rows appended durably: what every floor writes with."""

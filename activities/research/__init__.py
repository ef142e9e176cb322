"""Research activities: the knowledge base (items, analyses, experiments); sources and analysis follow."""

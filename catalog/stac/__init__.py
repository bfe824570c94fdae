"""The STAC API: the stac-fastapi clients, search, CQL2, queryables, fields, serializers."""

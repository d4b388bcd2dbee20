"""Schemathesis hooks for scripts/fuzz-api (loaded through SCHEMATHESIS_HOOKS).

JSON Schema counts 1.0 as the integer 1, so schemathesis may generate 1.0 for an
integer path or query parameter and then write it into the URL as "1.0". The api
reads ids and limits in URLs as integer text (`/reviewer/1.0` is not a URL of
reviewer 1; one resource, one URL) and answers 400. The value is the integer 1, whose
text is "1": these hooks write it so. JSON bodies keep 1.0, which the api accepts.
"""

import schemathesis


def _as_integer_text(values):
    if not values:
        return values
    return {
        name: int(value) if isinstance(value, float) and value.is_integer() else value
        for name, value in values.items()
    }


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    return _as_integer_text(path_parameters)


@schemathesis.hook
def map_query(context, query):
    return _as_integer_text(query)

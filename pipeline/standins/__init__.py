"""pipeline.standins: loopback HTTP stand-ins for the external services geopump talks to."""


def standin_env(firms, gfw, data_api) -> dict[str, str]:
    """The geopump environment variables that point every client at running stand-ins."""
    return {
        "FIRMS_URL": firms.url,
        "FIRMS_MAP_KEY": firms.map_key,
        "GFW_API_URL": gfw.url,
        "GFW_API_TOKEN": gfw.token,
        "GFW_API_KEY": gfw.api_key,
        "GFW_DATA_API_URL": data_api.url,
        "GFW_DATA_API_TOKEN": data_api.token,
    }

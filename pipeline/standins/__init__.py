"""pipeline.standins: loopback HTTP stand-ins for the external services geopump talks to."""

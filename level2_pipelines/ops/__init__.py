"""The machinery that runs level 2 on one machine or on a team's servers: local servers, the warm
worker, team mode. The lesson (stages, flow, service, monitor, triggers) does not import it."""

"""The machinery that runs level 2 on one machine or on a team's servers: the local servers
(`make level2-up`), the warm worker, team mode. The stages, the flow and the service never
import it; the command lines and the triggers' watcher do, to find the local Prefect server and
to hand a landed batch to the warm worker."""

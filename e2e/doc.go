// Package e2e is the chaos suite for the docker compose deployment
// (docker-compose.yml, deploy/): it brings up db, node1..node3 and lb under
// a unique project name, injects faults (kill -9, network disconnect,
// partitions, docker pause, database down, restarts) while a prober polls
// every node's /ping and MFT greetings directly and a client uploads files
// through the load balancer, and prints one table per run: failover times,
// overlap (must be 0), acknowledged uploads lost or corrupted (must be 0),
// client errors and recovery times.
//
// The tests run only when E2E=1 (`make e2e` sets it) and a Docker engine
// answers; otherwise they skip and say so. Settings (environment):
// E2E_SCENARIOS (comma-separated names, "soak" included; default all),
// E2E_TRIALS (multiplier, default 1), E2E_SOAK (idle soak, default
// 10m; 0 skips it), E2E_KEEP=1 (leave the cluster up), E2E_REPORT (file
// the table is also written to, default bin/e2e-report.txt), E2E_HEARTBEAT,
// E2E_DEADLINE, E2E_HEARTBEATCHECK ([controller] timings of the nodes).
// The images are built by deploy/build-images.sh (cached by content hash),
// the node binary with the test vendor key of testsupport, and the nodes
// get a freshly signed license for three nodes.
package e2e

// Package check tests the monitoring files of deploy/: the Prometheus
// alert rules (deploy/prometheus) and the Grafana dashboard
// (deploy/grafana). It is a module of its own so that the Prometheus
// server's packages it uses (rulefmt, the PromQL parser and engine) stay
// out of mcpmesh's own dependencies; `make test` runs it.
//
// The tests check that
//   - the rules file parses as Prometheus would load it (rule syntax,
//     PromQL, annotation templates);
//   - every alert fires on a sample of the trouble it describes and stays
//     quiet on a healthy sample, evaluated by the PromQL engine for the
//     whole of its `for:` window;
//   - every PromQL expression of the dashboard parses, and every metric
//     that the rules or the dashboard name is one that mcpmesh's source
//     declares, so a renamed metric cannot leave a dead panel or an alert
//     that can never fire.
package check

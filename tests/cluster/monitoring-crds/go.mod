// The prometheus-operator CustomResourceDefinitions the tests install in the control plane, pinned
// here so that go.sum checks their bytes. The module zip from the Go module proxy carries them in
// example/prometheus-operator-crd/; nothing is built from it.
module bookgen.test/monitoringcrds

go 1.26

require github.com/prometheus-operator/prometheus-operator v0.85.0

package readiness

// For the external tests (package readiness_test), which may import the
// controller.
var (
	Pending        = pending
	GateCondition  = gateCondition
	ConditionPatch = conditionPatch
)

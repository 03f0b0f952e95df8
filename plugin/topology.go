package plugin

// TopologyNodeKey is the segment key that pins a loop-transport volume to the
// storage host's node: topology.<driver name>/node.
func TopologyNodeKey(driverName string) string { return "topology." + driverName + "/node" }

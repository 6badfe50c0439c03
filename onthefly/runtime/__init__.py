"""The run runtime: control state machine, command queue, event bus. Domain code: no protobuf here."""

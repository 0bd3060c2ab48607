// The protocol: every message that crosses NATS (type + runtime schema) and every subject name.
export * from './resources.js'
export * from './tasks.js'
export * from './agent.js'
export * from './scheduler.js'
export * from './subjects.js'
export * from './codec.js'
export * from './state.js'

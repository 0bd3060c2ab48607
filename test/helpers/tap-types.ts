// The type of a tap test object (`t` inside t.test), for helpers that take one.
import type tap from 'tap'

export type TapTest = Parameters<Parameters<typeof tap.test>[0]>[0]

// Which webhook deliveries were handled already, so that a redelivery (same X-GitHub-Delivery)
// starts no second run. The CI service gives one backed by NATS KV (shared by its replicas);
// `MemoryDeliveryLog` serves one process and the tests.

export interface DeliveryLog {
  /** Records the delivery id; true when it was recorded before (a redelivery). */
  seen(id: string): Promise<boolean>
  /**
   * Forgets an id whose handling failed, so that a redelivery is handled rather than dropped.
   * Optional: without it, a failed delivery stays recorded.
   */
  forget?(id: string): Promise<void>
}

/** The last `capacity` delivery ids of this process (oldest forgotten first). */
export class MemoryDeliveryLog implements DeliveryLog {
  private readonly ids = new Set<string>()

  constructor(private readonly capacity = 10_000) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, not ${capacity}`)
  }

  async seen(id: string): Promise<boolean> {
    if (this.ids.has(id)) return true
    this.ids.add(id)
    // a Set iterates in insertion order: the first is the oldest
    if (this.ids.size > this.capacity) this.ids.delete(this.ids.values().next().value as string)
    return false
  }

  async forget(id: string): Promise<void> {
    this.ids.delete(id)
  }

  get size(): number {
    return this.ids.size
  }
}

// The agent's checkout of a task's commit (the code is shared with the CI service).
export { WORKSPACE_DIR, WORKSPACE_MOUNT, checkoutCommit } from '../../../shared/git/checkout.js'

// The master's operator HTTP interface. Usage:
//
//   const http = createMasterHttp({ getState, metrics, isLeader, leaderHttpUrl, logger })
//   await http.listen({ host: '0.0.0.0', port: 5050 })
export { createMasterHttp, type MasterHttpOptions, type MasterHttp } from './server.js'
export { errorResponse, httpStatusOf, NOT_FOUND, type ErrorBody } from './errors.js'

// HTTP pieces shared by the master and the CI service. Usage:
//
//   installAccessHook(app, httpAuthFrom({}, process.env), { public: ['/health'] })
export {
  httpAuthFrom, checkAccess, checkTokenText, parseTokensFile, installAccessHook, accessOf,
  type HttpAuth, type HttpAuthSources, type ApiToken, type TokenRole, type RouteAccess, type AccessHookOptions,
} from './auth.js'

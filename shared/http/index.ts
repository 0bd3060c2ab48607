// HTTP pieces shared by the master and the CI service. Usage:
//
//   installAccessHook(app, httpAuthFrom({}, process.env), { public: ['/health'] })
//   const tls = httpTlsFrom({ certFile, keyFile }, process.env)   // fastify's `https` option
export {
  httpAuthFrom, checkAccess, checkTokenText, parseTokensFile, installAccessHook, accessOf, signedLink, checkSignedLink, SIGNED_LINK_TTL_MS,
  type HttpAuth, type HttpAuthSources, type ApiToken, type TokenRole, type RouteAccess, type AccessHookOptions,
} from './auth.js'
export { httpTlsFrom, httpCaFrom, httpRequest, schemeOf, type HttpTls, type HttpTlsSources, type HttpRequestInit } from './tls.js'

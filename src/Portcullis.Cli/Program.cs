using Portcullis.Cli;

// Socket completions run inline on the epoll threads instead of hopping to the thread pool: the request
// path is asynchronous end to end, and a proxy gains ~12 % throughput on the plain-proxy benchmark
// (BENCHMARKS.md). Read once by the socket engine, so it must be set before the first socket; an explicit
// DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0 keeps the default behaviour.
const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";
if (Environment.GetEnvironmentVariable(InlineCompletions) is null)
{
    Environment.SetEnvironmentVariable(InlineCompletions, "1");
}

return await PortcullisCli.RunAsync(args);

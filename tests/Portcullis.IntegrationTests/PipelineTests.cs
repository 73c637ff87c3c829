using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.IntegrationTests.Infrastructure;
using Yarp.ReverseProxy.Transforms;
using Yarp.ReverseProxy.Transforms.Builder;

namespace Portcullis.IntegrationTests;

/// <summary>What runs per request: ASP.NET Core's own authentication and authorization middleware stay out of the gateway's pipeline.</summary>
public sealed class PipelineTests
{
    [Fact]
    public async Task AspNetCore_authentication_and_authorization_middleware_do_not_run_per_request()
    {
        await using var upstream = await TestUpstream.StartAsync("a");
        var probe = new MiddlewareProbe();
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [{{upstream.Url}}]
            """,
            configureServices: services => services.AddSingleton<ITransformProvider>(probe));

        for (var i = 0; i < 3; i++)
        {
            using var response = await gateway.Client.GetAsync("/x");
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(3, probe.Requests);
        // AuthenticationMiddleware sets IAuthenticationFeature on every request; AuthorizationMiddleware marks Items.
        Assert.Equal(0, probe.SawAuthenticationMiddleware);
        Assert.Equal(0, probe.SawAuthorizationMiddleware);
    }

    private sealed class MiddlewareProbe : ITransformProvider
    {
        private int _requests;
        private int _authentication;
        private int _authorization;

        public int Requests => Volatile.Read(ref _requests);

        public int SawAuthenticationMiddleware => Volatile.Read(ref _authentication);

        public int SawAuthorizationMiddleware => Volatile.Read(ref _authorization);

        public void ValidateRoute(TransformRouteValidationContext context)
        {
        }

        public void ValidateCluster(TransformClusterValidationContext context)
        {
        }

        public void Apply(TransformBuilderContext context) => context.AddRequestTransform(transform =>
        {
            Interlocked.Increment(ref _requests);
            if (transform.HttpContext.Features.Get<IAuthenticationFeature>() is not null) Interlocked.Increment(ref _authentication);
            if (transform.HttpContext.Items.ContainsKey("__AuthorizationMiddlewareWithEndpointInvoked")) Interlocked.Increment(ref _authorization);
            return ValueTask.CompletedTask;
        });
    }
}

using Microsoft.EntityFrameworkCore;

namespace Portcullis.IntegrationTests.Infrastructure.Identity;

/// <summary>
/// The EF Core context behind the test identity provider's OpenIddict stores (applications, tokens,
/// authorizations, scopes). Backed by the EF InMemory provider with a root owned by the fixture, so the
/// store survives the provider being stopped, restarted or re-keyed.
/// </summary>
internal sealed class IdentityProviderDbContext(DbContextOptions<IdentityProviderDbContext> options) : DbContext(options);

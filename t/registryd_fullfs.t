#!/usr/bin/perl

# registryd on a full filesystem (a 2 MB tmpfs of the test's own): every
# write is refused with 503 and a reason naming the full disk, nothing of
# it is kept, reads go on, /healthz says why (500); when room
# returns, writes are taken again, and after a restart the registry holds
# exactly the acknowledged writes.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd' unless -x $t->bin('registryd');
plan skip_all => 'mounting a tmpfs needs root (CI runs as root)' if $> != 0;

my $fs = $t->dir . '/fs';
mkdir $fs or die "mkdir $fs: $!";
system('mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', $fs) == 0
    or BAIL_OUT("cannot mount a tmpfs on $fs");
my $mounted = 1;

END {
    system('umount', '-l', $fs) if $mounted;
}

$t->start_registryd(data_dir => "$fs/registry");

my %labels = map { ("l$_" => 'x' x 200) } 1 .. 8;

sub reg {
    my ($id, %f) = @_;
    return $t->api(PUT => "/v1/services/s/instances/$id",
                   { address => '127.0.0.1', port => 8000, labels => \%labels,
                     %f });
}

my @acked;
for my $i (1 .. 20) {
    my $r = reg("a$i");
    push @acked, "a$i" if $r->{status} == 201;
}
is scalar @acked, 20, '20 registrations acknowledged';

# fill the filesystem
open my $fh, '>', "$fs/filler" or die "filler: $!";
my $block = "\0" x 65536;
for (1 .. 100) {
    last unless syswrite $fh, $block;
}
close $fh;

my $before = $t->api(GET => '/v1/export')->{content};
my $index = $t->api(GET => '/v1/services')->{json}{index};

my @writes = (
    [ 'a new instance', sub { reg('new1') } ],
    [ 'an update', sub { reg('a1', port => 9999) } ],
    [ 'a deregistration', sub {
          $t->api(DELETE => '/v1/services/s/instances/a2') } ],
    [ 'a policy', sub {
          $t->api(PUT => '/v1/policies/p',
                  "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                  . "metadata:\n  name: s\nspec:\n  host: s\n",
                  { 'Content-Type' => 'application/yaml' }) } ],
);

my $refused = 0;
for my $w (@writes) {
    my ($what, $do) = @$w;
    my $r = $do->();
    is $r->{status}, 503, "disk full, $what: 503";
    like $r->{json}{error} // '',
        qr/^store: the disk of \S+registry\.db is full: the write is not taken; try again when there is room$/,
        "disk full, $what: the reason";
    $refused++;
}
ok $refused >= 4, "$refused writes refused";

is $t->api(GET => '/v1/export')->{content}, $before,
    'nothing of the refused writes is kept';
is $t->api(GET => '/v1/services')->{json}{index}, $index,
    'the index did not move';
is $t->api(GET => '/v1/services/s')->{status}, 200, 'reads go on';
my $h = $t->api(GET => '/healthz');
is $h->{status}, 500, '/healthz: 500 while commits fail';
like $h->{json}{error} // '', qr/disk of \S+ is full/, '... saying why';

# room again
unlink "$fs/filler";
is reg('after')->{status}, 201, 'room again: a write is taken';
push @acked, 'after';
is $t->api(GET => '/healthz')->{status}, 200, '/healthz: 200 again';

# after a restart: exactly the acknowledged writes
$t->restart_registryd;
my @ids = sort map { $_->{id} }
          @{ $t->api(GET => '/v1/services/s')->{json}{instances} || [] };
is_deeply \@ids, [ sort @acked ],
    'after a restart: the acknowledged writes, and only them';

$t->stop_registryd;
system('umount', $fs) == 0 and $mounted = 0;
ok !$mounted, 'the tmpfs is unmounted';

$t->done_checks;
done_testing;

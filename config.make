# Sourced by nginx's auto/make after its own rules (an addon's config.make):
# the rule that makes the status location's page into C.  The output is in
# the build tree (objs/), never in the repository; an edit of
# ngx_mesh_module/dashboard.html remakes it and the module.

cat << END                                                >> $NGX_MAKEFILE

$MESH_DASHBOARD_C:	$MESH_DIR/dashboard.html $MESH_DIR/dashboard.sh
	sh $MESH_DIR/dashboard.sh $MESH_DIR/dashboard.html $MESH_DASHBOARD_C

END
